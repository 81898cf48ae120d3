"""The local one-process engine (Hugging Face transformers): CPU default and single-GPU runs."""
