# Issue 19: "remember me", session names and known devices.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("rotating_tokens", "0004_converted_token_outlives_family"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="tokenfamily",
            name="remember",
            field=models.BooleanField(default=True, verbose_name="remembered"),
        ),
        migrations.AddField(
            model_name="tokenfamily",
            name="name",
            field=models.CharField(blank=True, default="", max_length=64, verbose_name="name"),
        ),
        migrations.CreateModel(
            name="KnownDevice",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("key", models.CharField(max_length=64, verbose_name="device key")),
                ("last_login_at", models.DateTimeField(verbose_name="last login")),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                        verbose_name="user",
                    ),
                ),
            ],
            options={
                "verbose_name": "known device",
                "verbose_name_plural": "known devices",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("user", "key"), name="rt_known_device_user_key"
                    )
                ],
            },
        ),
    ]
