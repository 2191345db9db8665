/** Shared app context handed to every view. */
import type { Store } from './store';

export interface View {
  /** Builds the view's static parts (forms) once; returns the element. */
  mount(): HTMLElement;
  /** Re-renders the live parts from the store (called at most once per frame). */
  update(): void;
  unmount?(): void;
}

export interface App {
  store: Store;
  toast(text: string, kind?: 'ok' | 'error'): void;
  navigate(route: string): void;
}
