"""Distributed storage (DESIGN §10): suppliers keep opaque fragments, customers cut, encrypt,
erasure-code and place their files and keep the catalogue that finds them again."""
