"""Training: SFT and logit distillation, LoRA or full fine-tuning, teachers and students."""
