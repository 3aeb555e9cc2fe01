from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from dpp import health, llms, problems

urlpatterns = [
    path("health", health.health, name="health"),
    path("readyz", health.readyz, name="readyz"),
    path("problems/<slug:slug>", problems.problem_type_page, name="problem-type"),
    path("api/schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]), name="schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema", authentication_classes=[], permission_classes=[]),
        name="docs",
    ),
    path("admin/", admin.site.urls),
    path("v1/", include("runs.urls")),
    path("v1/", include("billing.urls")),
    path("", include(llms.urlpatterns)),
    path("v1/", include("runs.webhooks.urls")),
]

handler400 = "dpp.problems.handler400"
handler403 = "dpp.problems.handler403"
handler404 = "dpp.problems.handler404"
handler500 = "dpp.problems.handler500"
