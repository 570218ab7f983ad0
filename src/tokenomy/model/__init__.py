"""The model layer: distillation and quantization, measured in cost and quality.

Needs the optional extra ``tokenomy[model]`` (PyTorch, transformers, torchao,
optimum-quanto). Nothing here is imported by the core: the CLI imports these modules
inside its commands, so ``tokenomy`` without the extra never loads torch.

- :mod:`.loss`: the distillation objective;
- :mod:`.data`: JSONL data sets, split and batched;
- :mod:`.models`: local model folders and configs (never a hub download);
- :mod:`.train`: the trainer (checkpoints, resume, progress bar);
- :mod:`.measure`: quality (perplexity, accuracy), parameters, tokens/s;
- :mod:`.cost`: a local model's config as the capacity model's model, priced per token;
- :mod:`.quantize`: 8-bit and 4-bit weights on CPU, each variant measured in its own process;
- :mod:`.candidates`: results stored in the ledger as candidate self-hosted models
  (no torch: the planner reads them).
"""
