/**
 * Annotations an operator (or a test) sets on a resource to tell the controller something the
 * spec does not say. Part of the API: the reconcilers read them, and the providers' messages name
 * them, so both import them from here rather than from one another.
 */

/**
 * On a Host: an operator confirms the host is powered off (`kubectl annotate host NAME
 * virtwarden.io/fence-confirmed=true`, or in the Host's manifest in standalone mode). The Host
 * reconciler treats it as a successful fence; the manual fence agent waits for it.
 */
export const FENCE_CONFIRMED_ANNOTATION = "virtwarden.io/fence-confirmed";
