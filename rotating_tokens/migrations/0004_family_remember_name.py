# Issue 19: "remember me" and session names. To be renumbered 0005 after the
# simplejwt cutoff migration (0004) at merge time.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("rotating_tokens", "0003_dpop"),
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
    ]
