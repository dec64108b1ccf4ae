from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from infatium import views

urlpatterns = [
    # Until the live page exists, the front door is the admin.
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
]
