// The live page: first page of posts over REST, then posts.created over the WebSocket.
// Reconnects with backoff and resumes with `since` (the last cursor seen), so nothing is
// missed and nothing is shown twice.
(function () {
  "use strict";
  const select = document.getElementById("feed");
  const list = document.getElementById("posts");
  const status = document.getElementById("status");
  const shown = new Set();
  let feedId = Number(select.value);
  let cursor = 0;
  let socket = null;
  let retry = 0;

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function render(post, fresh) {
    if (shown.has(post.id)) return;
    shown.add(post.id);
    const item = document.createElement("li");
    item.dataset.postId = String(post.id);
    if (fresh) item.className = "new";
    const title = document.createElement("h2");
    const link = document.createElement("a");
    link.textContent = post.title || "(untitled)";
    if (/^https?:\/\//.test(post.url || "")) link.href = post.url;
    link.rel = "noopener noreferrer";
    title.appendChild(link);
    item.appendChild(title);
    if (post.summary) {
      const summary = document.createElement("p");
      summary.textContent = post.summary;
      item.appendChild(summary);
    }
    const meta = document.createElement("div");
    meta.className = "meta";
    for (const tag of post.tags || []) {
      const chip = document.createElement("span");
      chip.className = "tag";
      chip.textContent = tag;
      meta.appendChild(chip);
    }
    const source = post.source ? (post.source.title || post.source.url) : "";
    const when = post.published_at ? new Date(post.published_at).toLocaleString() : "";
    meta.appendChild(document.createTextNode([source, when].filter(Boolean).join(" · ")));
    item.appendChild(meta);
    // Newest first: live posts go to the top, the first page is appended in order.
    if (fresh) list.prepend(item); else list.appendChild(item);
  }

  async function loadFirstPage() {
    const response = await fetch(`/api/feeds/${feedId}/posts/?page_size=50`, {
      credentials: "same-origin", headers: { Accept: "application/json" },
    });
    if (!response.ok) throw new Error(`posts: HTTP ${response.status}`);
    const page = await response.json();
    for (const post of page.results) {
      render(post, false);
      cursor = Math.max(cursor, post.id);
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/ws/`);
    const mine = socket;
    socket.onopen = () => {
      retry = 0;
      mine.send(JSON.stringify({ type: "subscribe", feed: feedId, since: cursor }));
    };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "subscribed") {
        setStatus("live", "live");
        document.body.dataset.ws = "open";
      } else if (message.type === "posts.created" && message.feed === feedId) {
        render(message.post, true);
        cursor = Math.max(cursor, message.cursor);
      } else if (message.type === "error" && message.code === "too_far_behind") {
        reload();
      } else if (message.type === "error" && message.code === "lagging" && message.feed === feedId) {
        // The server dropped this page's subscription (it read too slowly): resume from the
        // last post it delivered, which replays the rest with no gap and no duplicate.
        cursor = Math.max(cursor, message.cursor);
        mine.send(JSON.stringify({ type: "subscribe", feed: feedId, since: cursor }));
      }
    };
    socket.onclose = () => {
      if (mine !== socket) return; // replaced by a feed switch
      document.body.dataset.ws = "closed";
      setStatus("offline", "reconnecting…");
      retry = Math.min(retry + 1, 6);
      setTimeout(connect, Math.min(30000, 500 * 2 ** retry) * (0.5 + Math.random()));
    };
  }

  async function reload() {
    list.textContent = "";
    shown.clear();
    cursor = 0;
    feedId = Number(select.value);
    if (socket) { const old = socket; socket = null; old.close(); }
    try {
      await loadFirstPage();
    } catch (error) {
      setStatus("offline", String(error));
    }
    connect();
  }

  select.addEventListener("change", reload);
  reload();
})();
