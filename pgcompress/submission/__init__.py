"""What a submission carries: the generated artifact decoder and the wrapped, counted train_gpt.py."""
