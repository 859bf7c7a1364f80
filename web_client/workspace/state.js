// Who is signed in (the session response), shared by the pages.

let current = null;

export function me() {
  return current;
}

export function setMe(user) {
  current = user;
}

export function hasRole(...roles) {
  return current !== null && roles.includes(current.role);
}

export function go(hash) {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = hash;
}
