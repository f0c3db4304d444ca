// The board's drag and drop, with the mouse or the keyboard: an enhancement of each card's Move form.
// Moves and "Assign to me" are the same POSTs the forms make (CSRF token included), sent with fetch and
// answered in JSON: the card is redrawn as the server has it, also when the answer is a 409 (changed meanwhile).
(function () {
  "use strict";
  var board = document.querySelector("[data-board]");
  if (!board || !window.fetch || !window.URLSearchParams) return;
  var status = document.getElementById("board-status");
  var lanes = Array.prototype.slice.call(board.querySelectorAll(".lane"));
  var dragged = null, grabbed = null, target = null;

  function say(text, error) {
    status.textContent = text;
    status.className = "flash " + (error ? "flash-error" : "flash-success");
    status.hidden = false;
  }

  function laneOf(el) { return el.closest(".lane"); }
  function laneById(id) { return lanes.filter(function (l) { return l.dataset.columnId === String(id); })[0]; }

  function bump(lane, by) {
    var count = lane.querySelector(".count");
    count.textContent = String(Number(count.textContent) + by);
  }

  function refreshEmpty() {
    lanes.forEach(function (lane) {
      lane.querySelector(".empty-lane").hidden = !!lane.querySelector(".ticket-card");
    });
  }

  // Cards sort by priority (urgent first), then oldest first, as the server orders them.
  function before(a, b) {
    var pa = Number(a.dataset.priority), pb = Number(b.dataset.priority);
    if (pa !== pb) return pa > pb;
    var ca = Number(a.dataset.created), cb = Number(b.dataset.created);
    return ca !== cb ? ca < cb : Number(a.dataset.ticket) < Number(b.dataset.ticket);
  }

  function place(card, body) {
    var holder = document.createElement("div");
    holder.innerHTML = body.card.trim();
    var fresh = holder.firstElementChild;
    fresh.draggable = true;
    var from = laneOf(card), to = body.archived ? null : laneById(body.column_id);
    if (to) {
      var list = to.querySelector(".cards"), next = null;
      Array.prototype.some.call(list.children, function (other) {
        if (other !== card && before(fresh, other)) { next = other; return true; }
        return false;
      });
      list.insertBefore(fresh, next);
    }
    card.remove();
    if (from !== to) { bump(from, -1); if (to) bump(to, 1); }
    refreshEmpty();
    if (to) fresh.focus();
  }

  function post(form, data, card, failed) {
    card.classList.add("busy");
    fetch(form.action, {method: "POST", body: new URLSearchParams(data), credentials: "same-origin",
                        headers: {"Accept": "application/json"}})
      .then(function (response) {
        return response.json().catch(function () { return null; }).then(function (body) {
          card.classList.remove("busy");
          if (body && body.card) place(card, body);
          if (response.ok && body) say(body.message, false);
          else say(body && body.detail ? body.detail : failed + " (HTTP " + response.status + ").", true);
        });
      })
      .catch(function () {
        card.classList.remove("busy");
        say(failed + ": the server did not answer. Nothing changed.", true);
      });
  }

  function move(card, columnId) {
    if (String(columnId) === card.dataset.columnId) return;
    var form = card.querySelector("details.move form");
    var data = new FormData(form);
    data.set("column_id", columnId);
    post(form, data, card, "The move could not be saved");
  }

  // The forms themselves: a Move button or "Assign to me" without a page load.
  board.addEventListener("submit", function (event) {
    var form = event.target, card = form.closest(".ticket-card");
    if (!card) return;
    event.preventDefault();
    if (form.classList.contains("assign")) {
      post(form, new FormData(form), card, "The ticket could not be assigned");
    } else if (event.submitter && event.submitter.name === "column_id") {
      move(card, event.submitter.value);
    }
  });

  // Mouse: drag a card onto another column.
  lanes.forEach(function (lane) {
    Array.prototype.forEach.call(lane.querySelectorAll(".ticket-card"), function (c) { c.draggable = true; });
  });
  function mark(lane) {
    lanes.forEach(function (l) { l.classList.toggle("drop-target", l === lane); });
  }
  board.addEventListener("dragstart", function (event) {
    dragged = event.target.closest && event.target.closest(".ticket-card");
    if (!dragged) return;
    event.dataTransfer.setData("text/plain", dragged.dataset.ticket);
    event.dataTransfer.effectAllowed = "move";
    dragged.classList.add("dragging");
  });
  board.addEventListener("dragend", function () {
    if (dragged) dragged.classList.remove("dragging");
    dragged = null;
    mark(null);
  });
  board.addEventListener("dragover", function (event) {
    var lane = dragged && laneOf(event.target);
    if (!lane) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    mark(lane);
  });
  board.addEventListener("drop", function (event) {
    var lane = dragged && laneOf(event.target);
    if (!lane) return;
    event.preventDefault();
    mark(null);
    move(dragged, lane.dataset.columnId);
  });

  // Keyboard: Space picks the focused card up, the arrow keys choose a column, Space or Enter drops it.
  function release(announce) {
    if (!grabbed) return;
    grabbed.classList.remove("grabbed");
    grabbed.setAttribute("aria-pressed", "false");
    grabbed = target = null;
    mark(null);
    if (announce) say(announce, false);
  }
  board.addEventListener("keydown", function (event) {
    var card = event.target;
    if (!card.classList || !card.classList.contains("ticket-card")) return;  // not its link or buttons
    if (!grabbed) {
      if (event.key !== " ") return;
      event.preventDefault();
      grabbed = card;
      target = laneOf(card);
      card.classList.add("grabbed");
      card.setAttribute("aria-pressed", "true");
      mark(target);
      say("Picked up #" + card.dataset.ticket + ". Left and right arrows choose a column; Space drops it; " +
          "Escape cancels.", false);
      return;
    }
    var index = lanes.indexOf(target);
    if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
      event.preventDefault();
      index = Math.max(0, Math.min(lanes.length - 1, index + (event.key === "ArrowRight" ? 1 : -1)));
      target = lanes[index];
      mark(target);
      say("Drop #" + grabbed.dataset.ticket + " in " + target.dataset.column + "?", false);
    } else if (event.key === " " || event.key === "Enter") {
      event.preventDefault();
      var chosen = grabbed, lane = target;
      release(null);
      if (lane.dataset.columnId === chosen.dataset.columnId) say("#" + chosen.dataset.ticket + " stays where it is.");
      else move(chosen, lane.dataset.columnId);
    } else if (event.key === "Escape") {
      event.preventDefault();
      release("Move cancelled.");
    }
  });
  board.addEventListener("focusout", function (event) {
    if (grabbed && event.target === grabbed) release("Move cancelled.");
  });
})();
