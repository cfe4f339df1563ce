// What tests/test_dashboard.py measures in the page: evaluated as an object of checks.
({
  // Every panel's boxes inside the panel (a box in a scrolled list may be scrolled out of
  // sight vertically, never sideways); the page never scrolls sideways; what is hidden
  // takes no room.
  layoutProblems: () => {
    const problems = [];
    const page = document.documentElement;
    if (page.scrollWidth > page.clientWidth) problems.push(`the page scrolls sideways: ${page.scrollWidth} > ${page.clientWidth}`);
    const scrolls = (node) => ["auto", "scroll", "hidden"].includes(getComputedStyle(node).overflowY);
    for (const panel of document.querySelectorAll(".panel, .sidebar, .topbar")) {
      const box = panel.getBoundingClientRect();
      for (const node of panel.querySelectorAll("*")) {
        if (node.closest(".visually-hidden")) continue;
        const own = node.getBoundingClientRect();
        if (own.width === 0 || own.height === 0) continue;
        const what = `${node.tagName.toLowerCase()}${node.id ? "#" + node.id : ""}.${node.getAttribute("class") || ""} in ${panel.className}`;
        if (own.left < box.left - 1 || own.right > box.right + 1) {
          problems.push(`${what} sticks out sideways: ${Math.round(own.left)}..${Math.round(own.right)} not in ${Math.round(box.left)}..${Math.round(box.right)}`);
        }
        let scrolled = false;
        for (let up = node.parentElement; up; up = up === panel ? null : up.parentElement) if (scrolls(up)) scrolled = true;
        if (!scrolled && (own.top < box.top - 1 || own.bottom > box.bottom + 1)) {
          problems.push(`${what} sticks out: ${Math.round(own.top)}..${Math.round(own.bottom)} not in ${Math.round(box.top)}..${Math.round(box.bottom)}`);
        }
        // Content wider than its box (a cell's text, a scrolled table) unless cut on purpose
        // with an ellipsis (a text field's value scrolls in it, as it should).
        if (!["INPUT", "SELECT", "TEXTAREA"].includes(node.tagName) && node.clientWidth > 0 && node.scrollWidth > node.clientWidth + 1
            && getComputedStyle(node).overflowX !== "hidden") {
          problems.push(`${what} scrolls sideways: ${node.scrollWidth} > ${node.clientWidth}`);
        }
      }
    }
    return problems;
  },

  // How the main area's width is used: its panels' extent and the widths that matter.
  widthUse: () => {
    const main = document.querySelector("main").getBoundingClientRect();
    const panels = [...document.querySelectorAll("main > .panel")].map((panel) => panel.getBoundingClientRect());
    const error = document.querySelector("#runs .run-error").getBoundingClientRect();
    return {
      page: document.documentElement.clientWidth,
      mainLeft: main.left, mainRight: main.right,
      panelsLeft: Math.min(...panels.map((box) => box.left)), panelsRight: Math.max(...panels.map((box) => box.right)),
      log: document.querySelector(".log-panel").getBoundingClientRect().width,
      runs: document.querySelector(".runs-panel").getBoundingClientRect().width,
      error: error.width, errorHeight: error.height,
      logTop: document.querySelector("#log").getBoundingClientRect().top,
    };
  },
})
