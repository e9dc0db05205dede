// Keyboard shortcuts for the step player: left/right arrows step, space plays or pauses.
// They press the page's own buttons, so the server sees the same callbacks as a click.
document.addEventListener("keydown", function (event) {
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
  const buttons = { ArrowLeft: "back", ArrowRight: "forward", " ": "play" };
  const id = buttons[event.key];
  if (typing || !id) {
    return;
  }
  const button = document.getElementById(id);
  if (button) {
    button.click();
    event.preventDefault();
  }
});
