from django.urls import path

from billing import views

urlpatterns = [
    path("balance", views.BalanceView.as_view(), name="balance"),
]
