// The start page: its text in the page's language, and the language switch.

import { preparePage } from "./ui.js";

await preparePage();
