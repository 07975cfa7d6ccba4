"""The preference trait kind: a favourite animal, tree, ...; measured by exact scoring of one-word answers."""
