"""The table of Django's database cache, when the demo is set to use one
(``DEMO_CACHE=database``), so that ``migrate`` is all a fresh database needs."""

from django.core.management import call_command
from django.db import migrations


def create_cache_tables(apps, schema_editor):
    # Only for caches of the database being migrated; a no-op for every other backend
    # and for a table that exists.
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("demo", "0001_demo_users")]

    operations = [migrations.RunPython(create_cache_tables, migrations.RunPython.noop)]
