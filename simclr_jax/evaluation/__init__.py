"""Evaluation of a pretrained encoder: linear evaluation, fine-tuning and the pixel
baseline, and the classifier each one leaves in its workdir (trained_model.py)."""
