"""Evaluation of a pretrained encoder: linear evaluation, fine-tuning and the pixel
baseline, the one dict of them that the study reads (protocols.py), and the classifier
each one leaves in its workdir (trained_model.py)."""
