"""Pretrained causal language models from keras-hub (GPT-2, OPT, Llama, ...): streamed
generation (`generate-text --model PRESET`) and fine-tuning (`train-text --from-preset`)."""
