"""Dataset card templates (Jinja) and method descriptions, installed as `hf_select.cards` (see pyproject.toml)."""
