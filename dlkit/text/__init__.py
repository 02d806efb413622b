"""Language models: train-text and generate-text.

dlkit's own character-level models (`models`, `train`, `decoding`, `generate`) and pretrained
keras-hub CausalLMs (GPT-2, OPT, Llama, ...) loaded from presets: streamed generation
(`pretrained`, `pretrained_decoding`) and fine-tuning (`finetune`, `train-text --from-preset`).
"""

from dlkit.core.registry import register

register("exporter", "train-text", "dlkit.text.export:export_decoder")
for _task in ("train-text", "keras-hub"):  # a keras-hub CausalLM preset: generate-text's too
    register("text-generator", _task, "dlkit.text.generate:ServedGenerator")
