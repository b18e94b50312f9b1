"""Modules produced by corrgen's code generator; do not edit; safe to delete."""
