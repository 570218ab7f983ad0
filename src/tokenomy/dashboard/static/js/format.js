// Number formats shared by every page. Money arrives as exact decimal strings.
const grouped2 = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const small4 = new Intl.NumberFormat("en-US", { minimumFractionDigits: 4, maximumFractionDigits: 4 });
const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

// $1,234.56 from one dollar up, $0.0123 below, "<$0.0001" for any smaller non-zero amount.
export function usd(value) {
  const amount = Number(value || 0);
  if (amount === 0) return "$0.00";
  const sign = amount < 0 ? "-" : "";
  const abs = Math.abs(amount);
  if (abs >= 1) return `${sign}$${grouped2.format(abs)}`;
  if (abs < 0.0001) return `${sign}<$0.0001`;
  return `${sign}$${small4.format(abs)}`;
}

// Unit prices (per request, per 1k tokens) keep more digits: 4 significant.
export function unit(value) {
  const amount = Number(value || 0);
  if (amount === 0) return "$0";
  if (Math.abs(amount) >= 1) return `$${grouped2.format(amount)}`;
  return `$${amount.toPrecision(4).replace(/0+$/, "")}`;
}

export const count = (value) => integer.format(Number(value || 0));
export const short = (value) => compact.format(Number(value || 0));
export function percent(fraction, digits = 1) {
  const value = Number(fraction || 0);
  return value >= 10 ? ">1000%" : `${(value * 100).toFixed(digits)}%`;
}

// A limit as configured: exact below a hundredth of a cent instead of "<$0.0001".
export function limit(value) {
  const amount = Number(value || 0);
  return amount > 0 && amount < 0.0001 ? `$${value}` : usd(value);
}

export function time(ms) {
  return new Date(ms).toLocaleTimeString("en-GB", { hour12: false });
}

export function dateTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString("en-GB", { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", timeZone: "UTC" }) + " UTC";
}

export function day(iso) {
  if (!iso) return "—";
  return new Date(iso).toLocaleDateString("en-GB", { day: "numeric", month: "short", year: "numeric", timeZone: "UTC" });
}
