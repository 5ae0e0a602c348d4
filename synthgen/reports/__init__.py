"""Pictures and tables a person looks at (PNG files in ``reports/``, wired to ``dvc plots``)."""
