from django.urls import path

from runs.webhooks import views

urlpatterns = [
    path("webhooks/default/secret", views.DefaultSecretView.as_view(), name="webhooks-default-secret"),
    path("webhooks/default/secret/rotate", views.DefaultSecretRotateView.as_view(),
         name="webhooks-default-secret-rotate"),
    path("webhook_endpoints", views.EndpointCollectionView.as_view(), name="webhook-endpoints"),
    path("webhook_endpoints/<str:endpoint_id>", views.EndpointDetailView.as_view(), name="webhook-endpoint"),
    path("webhook_endpoints/<str:endpoint_id>/rotate_secret", views.EndpointRotateSecretView.as_view(),
         name="webhook-endpoint-rotate-secret"),
    path("webhook_endpoints/<str:endpoint_id>/test", views.EndpointTestView.as_view(), name="webhook-endpoint-test"),
    path("webhook_endpoints/<str:endpoint_id>/deliveries", views.EndpointDeliveriesView.as_view(),
         name="webhook-endpoint-deliveries"),
    path("webhook_deliveries/<str:delivery_id>/retry", views.DeliveryRetryView.as_view(),
         name="webhook-delivery-retry"),
]
