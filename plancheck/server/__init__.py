"""The HTTP side of plancheck: a JSON API with scoped tokens and a server-rendered results page.

`plancheck.server.app.create_app()` builds the FastAPI app and `serve()` runs it under uvicorn
(`plancheck api serve`). Like the CLI, it calls only the Python API, `plancheck.api`.
"""
