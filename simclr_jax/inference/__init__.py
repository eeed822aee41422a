"""A trained model applied to new images: predictions, embeddings, and exports to other
frameworks."""
