"""Routes a throwaway API view so authentication is tested on its own (see test_authentication)."""

from django.urls import path

from tests.tenants.test_authentication import WhoAmI

urlpatterns = [path("whoami", WhoAmI.as_view())]

handler404 = "dpp.problems.handler404"
handler500 = "dpp.problems.handler500"
