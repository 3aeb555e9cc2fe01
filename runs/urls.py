from django.urls import path

from runs import views

urlpatterns = [
    path("runs", views.RunCollectionView.as_view(), name="runs"),
    path("runs/<str:run_id>", views.RunDetailView.as_view(), name="run-detail"),
    path("runs/<str:run_id>/cancel", views.RunCancelView.as_view(), name="run-cancel"),
    path("packs", views.PackListView.as_view(), name="packs"),
    path("tenants/<str:tenant_id>/usage", views.UsageView.as_view(), name="usage"),
]
