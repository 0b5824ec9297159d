"""The JSON the API answers with, as pydantic models: they are the OpenAPI schema at /docs.

One module per route family; `common` holds what every response shares.
"""
