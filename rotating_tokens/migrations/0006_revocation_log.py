# The revocation log every process polls (revocation.py).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("rotating_tokens", "0005_family_remember_name"),
    ]

    operations = [
        migrations.CreateModel(
            name="Revocation",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("family_id", models.UUIDField()),
                ("revoked_at", models.DateTimeField(db_index=True)),
            ],
            options={
                "verbose_name": "revocation",
                "verbose_name_plural": "revocations",
            },
        ),
    ]
