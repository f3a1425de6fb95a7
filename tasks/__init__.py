"""The work of stacflow: tables, stores, relocate, enrich, derive, validate, report, artifacts.

Each module holds plain functions tested without Prefect, plus the thin `@task` that wraps them.
Nothing here reads YAML: configuration arrives as the typed objects the flows compiled.
"""
