"""Database access: tables, migrations, and one module of queries per aggregate."""
