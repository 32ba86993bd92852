"""Services: the operations views, the API and the CLI call. They own ``commit()``."""
