"""The Jinja templates, installed as the package ``codegen.templates`` (package data only).

The repository keeps them here, at its top level; pyproject.toml maps this folder to
``codegen.templates``, and ``codegen.render.template_root`` is where they are read from.
"""
