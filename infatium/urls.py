from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from infatium import views
from realtime import views as realtime_views

urlpatterns = [
    path("", realtime_views.live, name="live"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    # Also answered by infatium.middleware.ProbeMiddleware before host checks; listed here so
    # they are routes like any other (reverse, the route walk in tests/api/test_routes.py).
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("api/", include("infatium.api_router")),
]
