"""Telegram channels, in two modes that store the same raw posts.

Without credentials (the default) `preview.read_preview` reads the public web preview
(https://t.me/s/<name>) in the normal poll task. With TELEGRAM_API_ID, TELEGRAM_API_HASH and
TELEGRAM_SESSION, `manage.py telegram_gateway` runs `gateway.Gateway` on one MTProto client.

Both modes agree on identity, so switching creates no duplicates: one Source per channel,
RawPost.external_id = the message id (an album's smallest id), RawPost.url =
https://t.me/<username>/<id>, title = the first line of the text (`mapping.make_title`).
"""
