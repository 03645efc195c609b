"""Demo accounts, so the demo and its API can be tried right after ``migrate``:
``demo`` / ``demo-password`` (superuser, for /admin/) and ``alice`` / ``alice-password``."""

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import migrations

DEMO_USERS = [
    {"username": "demo", "password": "demo-password", "is_staff": True, "is_superuser": True},
    {"username": "alice", "password": "alice-password", "is_staff": False, "is_superuser": False},
]


def create_demo_users(apps, schema_editor):
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    for account in DEMO_USERS:
        if not User.objects.filter(username=account["username"]).exists():
            User.objects.create(
                username=account["username"],
                password=make_password(account["password"]),
                is_staff=account["is_staff"],
                is_superuser=account["is_superuser"],
            )


class Migration(migrations.Migration):
    dependencies = [migrations.swappable_dependency(settings.AUTH_USER_MODEL)]

    operations = [migrations.RunPython(create_demo_users, migrations.RunPython.noop)]
