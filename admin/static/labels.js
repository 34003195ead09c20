// The label choice of the reference forms (templates/_labels.html): "new label…"
// shows the field for a new label, which must be ticked to be created; while a new
// name is typed, the server says which existing labels it looks like
// (GET /references/labels/similar), and a warning then has to be ticked before the
// form is sent ("Scratch" beside "scratches"). The server checks all of it again.
"use strict";

(function () {
  function setup(box) {
    const select = box.querySelector('select[name="label"]');
    const fresh = box.querySelector(".new-label");
    const input = fresh.querySelector('input[name="new_label"]');
    const create = fresh.querySelector('input[name="create_label"]');
    const named = fresh.querySelector(".new-label-name");
    const warning = fresh.querySelector(".label-similar");
    const names = warning.querySelector(".similar-names");
    const confirm = warning.querySelector('input[name="confirm_similar"]');
    let asked = 0;

    function isNew() {
      return select.value === box.dataset.newValue;
    }

    function warn(similar) {
      const name = input.value.trim();
      if (confirm.value !== name) confirm.checked = false;
      confirm.value = name;
      warning.hidden = similar.length === 0;
      confirm.required = similar.length > 0;
      const quoted = similar.map((label) => `“${label}”`);
      names.textContent = quoted.length > 1
        ? `the existing labels ${quoted.join(", ")}`
        : `the existing label ${quoted.join("")}`;
    }

    async function check() {
      const name = input.value.trim();
      const ticket = ++asked;
      if (!isNew() || !name) return warn([]);
      try {
        const response = await fetch(
          `${box.dataset.similarUrl}?name=${encodeURIComponent(name)}`,
          { headers: { Accept: "application/json" }, credentials: "same-origin" },
        );
        if (!response.ok || ticket !== asked) return;
        warn((await response.json()).similar || []);
      } catch (error) {
        // offline: the server asks when the form is sent
      }
    }

    function update() {
      const chosen = isNew();
      fresh.hidden = !chosen;
      input.required = chosen;
      create.required = chosen;
      const name = input.value.trim();
      named.textContent = name ? ` “${name}”` : "";
      check();
    }

    select.addEventListener("change", () => {
      update();
      if (isNew()) input.focus();
    });
    input.addEventListener("input", update);
    update();
  }

  document.querySelectorAll(".label-choice").forEach(setup);
})();
