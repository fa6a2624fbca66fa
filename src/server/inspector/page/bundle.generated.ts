export const APP_JS = ""
export const APP_CSS = ""
