"""Ledger data is read-only in admin: money moves only through billing.services."""

from __future__ import annotations

from django.contrib import admin

from billing.models import Account, Journal, JournalLeg, Wallet
from billing.money import micros_to_usd
from dpp.admin import ReadOnlyInline


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class JournalLegInline(ReadOnlyInline):
    model = JournalLeg
    fields = ("account", "amount_micros", "amount_usd")

    @admin.display(description="USD")
    def amount_usd(self, leg):
        return micros_to_usd(leg.amount_micros)


@admin.register(Journal)
class JournalAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "tenant", "run_id", "created_at", "memo")
    list_filter = ("kind",)
    search_fields = ("=run_id", "=tenant__id", "reference", "memo")
    readonly_fields = ("kind", "phase", "tenant", "run_id", "reference", "memo", "created_at")
    inlines = [JournalLegInline]
    list_select_related = ("tenant",)


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "tenant")
    list_filter = ("kind",)
    list_select_related = ("tenant",)


@admin.register(Wallet)
class WalletAdmin(ReadOnlyAdmin):
    list_display = ("tenant", "available_usd", "held_usd", "updated_at")
    readonly_fields = ("tenant", "available_micros", "held_micros", "updated_at")
    list_select_related = ("tenant",)
    search_fields = ("tenant__name", "=tenant__id")

    @admin.display(description="available (USD)")
    def available_usd(self, wallet):
        return micros_to_usd(wallet.available_micros)

    @admin.display(description="held (USD)")
    def held_usd(self, wallet):
        return micros_to_usd(wallet.held_micros)
