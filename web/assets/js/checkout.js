// Checkout for a hold on the event page. With the built-in test provider: a
// test-card form whose Stripe test card numbers map to Stripe's test payment
// methods (pm_card_visa, ...), checked in the browser first. With Stripe: Stripe
// Elements, whose script (https://js.stripe.com/v3/) is loaded only then — the
// page's CSP allows Stripe's origins only when it is configured. Either way the
// payment method id goes to `POST /holds/{id}/purchase`; 3-D Secure (202
// `requires_action`) is completed, then the same payment method is sent again.

import { ApiProblem, api, money } from './api.js';
import { el, fail, notify, put } from './ui.js';

/** Stripe's test card numbers and the payment methods they stand for. */
export const TEST_CARDS = [
  { number: '4242424242424242', pm: 'pm_card_visa', words: 'Visa: succeeds' },
  { number: '5555555555554444', pm: 'pm_card_mastercard', words: 'Mastercard: succeeds' },
  { number: '4000000000000002', pm: 'pm_card_chargeDeclined', words: 'declined' },
  { number: '4000000000009995', pm: 'pm_card_chargeDeclinedInsufficientFunds', words: 'declined: insufficient funds' },
  { number: '4000002760003184', pm: 'pm_card_threeDSecure2Required', words: 'asks for 3-D Secure' },
];

const HOLD_GONE = new Set(['hold_not_active', 'seats_gone', 'sale_closed', 'event_cancelled']);

function grouped(number) {
  return number.replace(/(.{4})/g, '$1 ').trim();
}

function luhn(digits) {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/** Shows (or clears) a field's own error message. */
function fieldError(input, message) {
  const note = document.getElementById(`${input.id}-error`);
  if (message) {
    input.setAttribute('aria-invalid', 'true');
    if (note) {
      note.hidden = false;
      put(note, message);
    }
  } else {
    input.removeAttribute('aria-invalid');
    if (note) {
      note.hidden = true;
      put(note);
    }
  }
}

/** Checks the test-card form; returns the payment method id, or null (errors shown). */
function readTestCard(form) {
  const number = form.elements.number;
  const exp = form.elements.exp;
  const cvc = form.elements.cvc;
  const name = form.elements.name;
  const errors = [];
  const digits = number.value.replace(/[\s-]/g, '');
  let pm = null;
  if (!/^\d{12,19}$/.test(digits)) {
    errors.push([number, 'Enter the card number: 12 to 19 digits.']);
  } else {
    pm = TEST_CARDS.find((c) => c.number === digits)?.pm || null;
    if (!pm) {
      errors.push([
        number,
        `${luhn(digits) ? '' : 'That card number is not valid. '}Use a test card: this shop takes no real cards. ` +
          `Try ${TEST_CARDS.map((c) => `${grouped(c.number)} (${c.words})`).join('; ')}.`,
      ]);
      document.getElementById('test-cards').open = true;
    }
  }
  const m = /^\s*(\d{1,2})\s*\/\s*(\d{2}|\d{4})\s*$/.exec(exp.value);
  if (!m) {
    errors.push([exp, 'Enter the expiry date as MM/YY, e.g. 12/34.']);
  } else {
    const month = Number(m[1]);
    const year = m[2].length === 2 ? 2000 + Number(m[2]) : Number(m[2]);
    const now = new Date();
    if (month < 1 || month > 12) errors.push([exp, 'The month must be 01 to 12.']);
    else if (year < now.getFullYear() || (year === now.getFullYear() && month < now.getMonth() + 1)) {
      errors.push([exp, 'This card has expired: enter a date in the future.']);
    }
  }
  if (!/^\d{3,4}$/.test(cvc.value.trim())) errors.push([cvc, 'Enter the 3 or 4 digit security code.']);
  if (!name.value.trim()) errors.push([name, 'Enter the name on the card.']);
  for (const input of [number, exp, cvc, name]) fieldError(input, errors.find(([i]) => i === input)?.[1]);
  if (errors.length) {
    errors[0][0].focus();
    return null;
  }
  return pm;
}

/** Loads Stripe.js once, only when Stripe is configured. */
let stripeScript = null;
function loadStripe() {
  if (window.Stripe) return Promise.resolve(window.Stripe);
  if (!stripeScript) {
    stripeScript = new Promise((resolve, reject) => {
      const script = document.createElement('script');
      script.src = 'https://js.stripe.com/v3/';
      script.async = true;
      script.addEventListener('load', () => (window.Stripe ? resolve(window.Stripe) : reject(new Error('Stripe.js did not start'))));
      script.addEventListener('error', () => reject(new Error('Stripe.js could not be loaded')));
      document.head.append(script);
    });
  }
  return stripeScript;
}

/** Asks the buyer to complete the test provider's 3-D Secure step: true, false or null (closed). */
function askTestAuthentication() {
  const dialog = document.getElementById('threeds');
  return new Promise((resolve) => {
    const done = (answer) => {
      dialog.removeEventListener('close', closed);
      approve.removeEventListener('click', yes);
      reject.removeEventListener('click', no);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const approve = document.getElementById('threeds-approve');
    const reject = document.getElementById('threeds-fail');
    const yes = () => done(true);
    const no = () => done(false);
    const closed = () => done(null);
    approve.addEventListener('click', yes);
    reject.addEventListener('click', no);
    dialog.addEventListener('close', closed);
    dialog.showModal();
    approve.focus();
  });
}

/**
 * Sets up the checkout form. `hooks`: getHold() → the active hold or null,
 * onPaid(purchase), onProcessing(pending), onHoldGone(error).
 */
export async function setupCheckout(hooks) {
  const form = document.getElementById('card-form');
  const payButton = document.getElementById('pay');
  const status = document.getElementById('pay-status');
  let config = { payments: 'test', stripe_publishable_key: null };
  try {
    config = await api('GET', '/app/config.json');
  } catch (e) {
    fail(e);
  }

  put(
    document.getElementById('test-card-list'),
    TEST_CARDS.map((c) => el('li', {}, el('code', {}, grouped(c.number)), ` — ${c.words}`)),
  );

  let stripe = null;
  let card = null;
  const useStripe = config.payments === 'stripe' && !!config.stripe_publishable_key;
  if (useStripe) {
    document.getElementById('test-card-fields').hidden = true;
    document.getElementById('stripe-fields').hidden = false;
  }

  async function ensureStripe() {
    if (stripe) return;
    const Stripe = await loadStripe();
    stripe = Stripe(config.stripe_publishable_key);
    card = stripe.elements().create('card', { hidePostalCode: true });
    card.mount('#stripe-card');
  }

  async function paymentMethod() {
    if (!useStripe) return readTestCard(form);
    await ensureStripe();
    const name = document.getElementById('stripe-name').value.trim();
    const result = await stripe.createPaymentMethod({ type: 'card', card, billing_details: name ? { name } : undefined });
    if (result.error) {
      notify(result.error.message || 'The card details are not complete.', 'error');
      return null;
    }
    return result.paymentMethod.id;
  }

  async function purchase(hold, pm) {
    return api('POST', `/holds/${encodeURIComponent(hold.hold_id)}/purchase`, { payment_method: pm, include_qr_image: false });
  }

  async function authenticate(pending) {
    if (useStripe) {
      const result = await stripe.handleNextAction({ clientSecret: pending.client_secret });
      if (result.error) throw new ApiProblem(402, { code: 'payment_declined', detail: result.error.message });
      return true;
    }
    const approve = await askTestAuthentication();
    if (approve === null) return false;
    await api('POST', '/payments/test/authenticate', {
      payment_reference: pending.payment_reference,
      client_secret: pending.client_secret,
      approve,
    });
    return true;
  }

  let busy = false;
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (busy) return;
    const hold = hooks.getHold();
    if (!hold) {
      notify('Hold some seats first.', 'error');
      return;
    }
    busy = true;
    payButton.disabled = true;
    form.setAttribute('aria-busy', 'true');
    try {
      const pm = await paymentMethod();
      if (!pm) return;
      put(status, 'Paying…');
      let answer = await purchase(hold, pm);
      for (let round = 0; answer && answer.status === 'requires_action' && round < 3; round++) {
        put(status, 'Your bank asks you to confirm the payment…');
        if (!(await authenticate(answer))) {
          put(status, '');
          notify('The payment was not confirmed. Your seats are still held: try again or use another card.', 'error');
          return;
        }
        put(status, 'Paying…');
        answer = await purchase(hold, pm);
      }
      put(status, '');
      if (answer && Array.isArray(answer.tickets)) {
        hooks.onPaid(answer);
      } else if (answer && answer.status === 'processing') {
        hooks.onProcessing(answer);
      } else if (answer && answer.status === 'requires_action') {
        notify('The payment still needs confirming with your bank. Your seats are still held: try again.', 'error');
      }
    } catch (e) {
      put(status, '');
      fail(e);
      if (e instanceof ApiProblem && HOLD_GONE.has(e.code)) hooks.onHoldGone(e);
    } finally {
      busy = false;
      payButton.disabled = false;
      form.removeAttribute('aria-busy');
    }
  });

  return {
    /** Shows the form for a hold of `amount`. */
    show(hold) {
      form.hidden = false;
      put(payButton, `Pay ${money(hold.amount, hold.currency)}`);
      put(status, '');
      if (useStripe) ensureStripe().catch(fail);
    },
    hide() {
      form.hidden = true;
    },
  };
}
