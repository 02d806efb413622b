"""`dlkit models`: the pretrained keras-hub presets dlkit can use (finding and loading them is
shared by several families: `dlkit.core.hub`)."""
