"""Searchable architecture spaces built on automtl (ViT-MVT, …)."""
