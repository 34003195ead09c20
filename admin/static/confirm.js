// Ask before a change that is hard to take back. A form (or its submit button) with
// data-confirm="message" is sent only after window.confirm says yes, and then with
// confirmed=1; without that field the server answers with a confirmation page of its
// own (admin/confirmation.py), so a client without this script must confirm too.
// data-confirm-when="name=value" asks only when the form's field has that value
// (a user's form asks when it deactivates the user, not when it sets a role).
"use strict";

(function () {
  function applies(form, source) {
    const when = source.dataset.confirmWhen;
    if (!when) return true;
    const at = when.indexOf("=");
    const field = form.elements.namedItem(when.slice(0, at));
    return field !== null && field.value === when.slice(at + 1);
  }

  function markConfirmed(form) {
    let field = form.querySelector('input[type="hidden"][name="confirmed"]');
    if (!field) {
      field = document.createElement("input");
      field.type = "hidden";
      field.name = "confirmed";
      form.appendChild(field);
    }
    field.value = "1";
  }

  // Capture: this runs before any other submit handler, which then sees the answer.
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    const button = event.submitter;
    const source = button && button.dataset.confirm !== undefined ? button : form;
    const message = source.dataset.confirm;
    if (message === undefined || !applies(form, source)) return;
    if (window.confirm(message)) {
      markConfirmed(form);
    } else {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
})();
