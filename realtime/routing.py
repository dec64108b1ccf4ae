from django.urls import path

from realtime.consumers import FeedConsumer

websocket_urlpatterns = [path("ws/", FeedConsumer.as_asgi())]
