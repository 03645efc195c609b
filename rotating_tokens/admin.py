"""The admin: token families with their status, last use and rotation chain, and
revocation as actions. Never a hash, a lookup key or a sealed successor on any page."""

from __future__ import annotations

import contextlib
import ipaddress
import uuid
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import display_for_value
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Case, Count, Exists, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import services
from .devices import describe
from .models import RefreshToken, RevokeReason, TokenFamily, TokenFamilyQuerySet

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django.http import HttpRequest


class Status:
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"
    choices = ((ACTIVE, _("active")), (REVOKED, _("revoked")), (EXPIRED, _("expired")))


def with_admin_columns(queryset: QuerySet[TokenFamily]) -> QuerySet[TokenFamily]:
    """Everything the list shows, in the one query that reads the families: the
    status (as ``TokenFamily.objects.active()`` decides it), the last use and the
    number of tokens."""
    now = timezone.now()
    live_token = RefreshToken.objects.filter(
        family=OuterRef("pk"), used_at__isnull=True, expires_at__gt=now
    )
    token_count = (
        RefreshToken.objects.filter(family=OuterRef("pk"))
        .order_by()
        .values("family")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return (
        cast(TokenFamilyQuerySet, queryset.select_related("user"))
        .with_last_use()
        .annotate(
            status=Case(
                When(revoked_at__isnull=False, then=Value(Status.REVOKED)),
                When(Q(expires_at__gt=now) & Exists(live_token), then=Value(Status.ACTIVE)),
                default=Value(Status.EXPIRED),
            ),
            token_count=Coalesce(Subquery(token_count), 0),
        )
    )


class StatusFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return Status.choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[TokenFamily]) -> Any:
        if self.value() in dict(Status.choices):
            return queryset.filter(status=self.value())  # type: ignore[misc]
        return queryset


class RefreshTokenInline(admin.TabularInline):  # type: ignore[type-arg]
    """The rotation chain, oldest first, read-only."""

    model = RefreshToken
    fields = (
        "number",
        "issued_at",
        "expires_at",
        "used_at",
        "ip_address",
        "user_agent",
        "came_from",
    )
    readonly_fields = fields
    ordering = ("issued_at", "pk")
    extra = 0
    can_delete = False
    verbose_name = _("token of the rotation chain")
    verbose_name_plural = _("rotation chain")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Whoever may see the family sees its chain.
        return self.admin_site.get_model_admin(TokenFamily).has_view_permission(request, obj)

    @admin.display(description=_("token"))
    def number(self, token: RefreshToken) -> str:
        return f"#{token.pk}"

    @admin.display(description=_("rotated from"))
    def came_from(self, token: RefreshToken) -> str:
        return f"#{token.rotated_from_id}" if token.rotated_from_id else str(_("login"))


@admin.register(TokenFamily)
class TokenFamilyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    # What fits a 1,300-pixel screen between the admin's navigation and the filters
    # (650 pixels of table): the device with its name under it (its user agent on
    # hover), the last use with its address under it. The family id, the expiry, the
    # login's address and agent and the chain are on the family's page.
    list_display = (
        "device_and_name",
        "user",
        "status_and_reason",
        "created",
        "last_use",
        "dpop_bound",
    )
    list_display_links = ("device_and_name",)
    list_filter = (StatusFilter, "revoke_reason", "remember", "created_at")
    list_select_related = ("user",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "user",
                    "name",
                    "device",
                    "status",
                    "created_at",
                    "expires_at",
                    "remember",
                    "token_count",
                )
            },
        ),
        (_("Login"), {"fields": ("ip_address", "user_agent")}),
        (_("Last use"), {"fields": ("last_used_at", "last_ip_address", "last_user_agent")}),
        (_("Proof of possession (DPoP)"), {"fields": ("dpop_jkt",)}),
        (_("Revocation"), {"fields": ("revoked_at", "revoke_reason")}),
    )
    readonly_fields = (
        "id",
        "user",
        "name",
        "device",
        "remember",
        "status",
        "created_at",
        "expires_at",
        "token_count",
        "ip_address",
        "user_agent",
        "last_used_at",
        "last_ip_address",
        "last_user_agent",
        "revoked_at",
        "revoke_reason",
        "dpop_jkt",
    )
    inlines = (RefreshTokenInline,)
    actions = ("revoke_selected_families", "revoke_all_families_of_users")

    def get_queryset(self, request: HttpRequest) -> QuerySet[TokenFamily]:
        return with_admin_columns(super().get_queryset(request))

    # Columns computed by with_admin_columns ------------------------------------------

    @admin.display(description=_("status"), ordering="status")
    def status(self, family: TokenFamily) -> str:
        return str(dict(Status.choices)[family.status])  # type: ignore[attr-defined]

    @admin.display(description=_("device"))
    def device(self, family: TokenFamily) -> str:
        agent = getattr(family, "last_user_agent", None) or family.user_agent
        # format_html escapes both: the user agent is whatever the client sent.
        return format_html('<span title="{}">{}</span>', agent, describe(agent))

    @admin.display(description=_("device and name"), ordering="name")
    def device_and_name(self, family: TokenFamily) -> str:
        if not family.name:
            return self.device(family)
        # The name is whatever its owner typed: escaped by format_html.
        return format_html("{}<br><small>{}</small>", self.device(family), family.name)

    @admin.display(description=_("created"), ordering="created_at")
    def created(self, family: TokenFamily) -> str:
        # The date, and the time under it: the model field's column never wraps, and
        # its width (10:06 a.m. against 9:06) would decide whether the table fits.
        moment = (
            timezone.localtime(family.created_at)
            if timezone.is_aware(family.created_at)
            else family.created_at
        )
        return format_html(
            "{}<br><small>{}</small>",
            formats.date_format(moment, "DATE_FORMAT"),
            formats.time_format(moment, "TIME_FORMAT"),
        )

    @admin.display(description=_("last used (address)"), ordering="last_used_at")
    def last_use(self, family: TokenFamily) -> str:
        address = family.last_ip_address or ""  # type: ignore[attr-defined]
        # An IPv6 address has no space to wrap at: let it break anywhere.
        return format_html(
            '{}<br><small style="word-break: break-all">{}</small>',
            self.last_used_at(family),
            address,
        )

    @admin.display(description=_("status"), ordering="status")
    def status_and_reason(self, family: TokenFamily) -> str:
        status = self.status(family)
        if family.revoke_reason:
            return f"{status}: {family.get_revoke_reason_display()}"
        return status

    @admin.display(description=_("last used"), ordering="last_used_at")
    def last_used_at(self, family: TokenFamily) -> str:
        # Formatted here: the change page shows a method's value as str(), which
        # for a datetime is its raw ISO form, unlike the model's own date fields.
        return display_for_value(family.last_used_at, self.get_empty_value_display())  # type: ignore[attr-defined]

    @admin.display(description=_("IP address at last use"))
    def last_ip_address(self, family: TokenFamily) -> Any:
        return family.last_ip_address  # type: ignore[attr-defined]

    @admin.display(description=_("user agent at last use"))
    def last_user_agent(self, family: TokenFamily) -> str:
        return family.last_user_agent or ""  # type: ignore[attr-defined]

    @admin.display(description=_("user agent at login"))
    def short_user_agent(self, family: TokenFamily) -> str:
        return Truncator(family.user_agent).chars(40)

    @admin.display(description=_("user agent at last use"))
    def short_last_user_agent(self, family: TokenFamily) -> str:
        return Truncator(self.last_user_agent(family)).chars(40)

    @admin.display(description=_("DPoP"), boolean=True, ordering="dpop_jkt")
    def dpop_bound(self, family: TokenFamily) -> bool:
        return family.is_bound

    @admin.display(description=_("tokens"), ordering="token_count")
    def token_count(self, family: TokenFamily) -> int:
        return family.token_count  # type: ignore[attr-defined]

    # Search: username and email (contains), family id and IP address (exact) --------

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        user_model = get_user_model()
        fields = ["name", f"user__{user_model.USERNAME_FIELD}"]
        email = user_model.get_email_field_name()
        try:
            user_model._meta.get_field(email)
        except FieldDoesNotExist:
            return fields
        return fields if email == user_model.USERNAME_FIELD else [*fields, f"user__{email}"]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[TokenFamily], search_term: str
    ) -> tuple[QuerySet[TokenFamily], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        matches = Q()
        for field in self.get_search_fields(request):
            matches |= Q(**{f"{field}__icontains": term})
        # Ids and addresses are only compared when the term is one: the database would
        # refuse "alice" as a UUID or an inet.
        with contextlib.suppress(ValueError):
            matches |= Q(pk=uuid.UUID(term))
        try:
            ip = str(ipaddress.ip_address(term))
        except ValueError:
            pass
        else:
            used_from = RefreshToken.objects.filter(family=OuterRef("pk"), ip_address=ip)
            matches |= Q(ip_address=ip) | Q(Exists(used_from))
        return queryset.filter(matches), False

    # Nothing is added or edited by hand; only superusers delete ------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A family's page is read-only; the change permission only grants the actions.
        return obj is None and super().has_change_permission(request)

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser and super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: TokenFamily) -> None:
        # Revoked first, so its access tokens die at once and the signal goes out.
        services.revoke_family(obj, RevokeReason.ADMIN)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[TokenFamily]) -> None:
        services.revoke_families(self._plain(queryset), RevokeReason.ADMIN)
        super().delete_queryset(request, queryset)

    # Actions, through the same service functions as logout ---------------------------

    @admin.action(description=_("Revoke selected families"), permissions=["revoke"])
    def revoke_selected_families(
        self, request: HttpRequest, queryset: QuerySet[TokenFamily]
    ) -> None:
        revoked = services.revoke_families(self._plain(queryset), RevokeReason.ADMIN)
        self._report(request, revoked)

    @admin.action(
        description=_("Revoke all families of the selected families' users"),
        permissions=["revoke"],
    )
    def revoke_all_families_of_users(
        self, request: HttpRequest, queryset: QuerySet[TokenFamily]
    ) -> None:
        users = set(queryset.values_list("user_id", flat=True))
        revoked = services.revoke_families(
            TokenFamily.objects.filter(user_id__in=users), RevokeReason.ADMIN
        )
        self._report(request, revoked)

    @staticmethod
    def _plain(queryset: QuerySet[TokenFamily]) -> QuerySet[TokenFamily]:
        # The selection without the list's annotations, which a locking read refuses.
        return TokenFamily.objects.filter(pk__in=list(queryset.values_list("pk", flat=True)))

    def _report(self, request: HttpRequest, revoked: int) -> None:
        message = ngettext("%d family revoked.", "%d families revoked.", revoked) % revoked
        self.message_user(request, message)


# The user's page: their sessions --------------------------------------------------------


class RevokeFamilyForm(forms.ModelForm):  # type: ignore[type-arg]
    """One family on its user's page: nothing to edit, a box to revoke it."""

    revoke = forms.BooleanField(label=_("revoke"), required=False)

    class Meta:
        model = TokenFamily
        fields: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.revoked_at is not None:
            self.fields["revoke"].disabled = True

    def save(self, commit: bool = True) -> TokenFamily:
        # Through the service, as the family list's action: the signal goes out and
        # the family's access tokens die at once. Nothing else of the row is written.
        if self.cleaned_data.get("revoke"):
            services.revoke_family(self.instance, RevokeReason.ADMIN)
        return self.instance


class TokenFamilyInline(admin.TabularInline):  # type: ignore[type-arg]
    """The user's sessions, newest first, on the user's change page (added to the
    user model's admin by ``show_families_on_user_pages``)."""

    model = TokenFamily
    form = RevokeFamilyForm
    fields = ("device", "name", "created_at", "last_used_at", "state", "revoke")
    readonly_fields = ("device", "name", "created_at", "last_used_at", "state")
    ordering = ("-created_at",)
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name = _("session")
    verbose_name_plural = _("sessions (token families)")

    def get_queryset(self, request: HttpRequest) -> QuerySet[TokenFamily]:
        return with_admin_columns(super().get_queryset(request))

    def _family_admin(self) -> TokenFamilyAdmin:
        return cast(TokenFamilyAdmin, self.admin_site.get_model_admin(TokenFamily))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Changing means revoking here: whoever may run the list's revoke action.
        return self._family_admin().has_revoke_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._family_admin().has_view_permission(request)

    @admin.display(description=_("device"))
    def device(self, family: TokenFamily) -> str:
        return self._family_admin().device(family)

    @admin.display(description=_("last used"))
    def last_used_at(self, family: TokenFamily) -> str:
        return self._family_admin().last_used_at(family)

    @admin.display(description=_("state"))
    def state(self, family: TokenFamily) -> str:
        return self._family_admin().status_and_reason(family)


def show_families_on_user_pages(site: admin.AdminSite = admin.site) -> None:
    """Add ``TokenFamilyInline`` to the user model's admin on ``site``, once.

    Called from ``AppConfig.ready()``, after the admin has imported every app's
    ``admin.py``. A user admin registered later (or on another site) can list
    ``TokenFamilyInline`` in its ``inlines`` instead, or call this."""
    user_admin = site._registry.get(get_user_model())
    if user_admin is None or TokenFamily not in site._registry:
        return
    if TokenFamilyInline not in user_admin.inlines:
        # On this site's instance only: the class may serve other sites.
        user_admin.inlines = [*user_admin.inlines, TokenFamilyInline]  # type: ignore[misc]
