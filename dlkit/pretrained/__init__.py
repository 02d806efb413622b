"""Pretrained keras-hub models: finding presets (names, handles, folders, the cache) and
`dlkit models`, the list of the presets dlkit can use."""
