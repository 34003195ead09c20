// Compare: a kept upload says "keeping NAME"; once a new file is chosen in its place,
// say that it will be replaced, so the page never shows a choice it will not use.
document.querySelectorAll(".compare-slot").forEach((slot) => {
  const input = slot.querySelector("input[type=file]");
  const kept = slot.querySelector(".kept");
  if (!input || !kept) return;
  input.addEventListener("change", () => {
    const file = input.files && input.files[0];
    kept.querySelector(".kept-now").hidden = Boolean(file);
    const replaced = kept.querySelector(".kept-replaced");
    replaced.hidden = !file;
    replaced.querySelector("strong").textContent = file ? file.name : "";
  });
});
