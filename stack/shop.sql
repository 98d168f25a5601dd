-- Demo source database for the local CDC stack (scripts/stack, docker-compose.yml).
-- Run once, against database "shop", when the table does not exist yet.
CREATE TABLE IF NOT EXISTS public.customers (
  customer_id       serial PRIMARY KEY,
  email             text,
  first_name        text,
  last_name         text,
  city              text,
  state             text,
  country           text,
  customer_tier     text,
  lifetime_value    numeric(12,2),
  registration_date date,
  created_at        timestamptz DEFAULT now(),
  notes             text
);

INSERT INTO public.customers
  (email, first_name, last_name, city, state, country, customer_tier, lifetime_value, registration_date, notes)
VALUES
  ('alice.anderson@example.com', 'Alice', 'Anderson', 'Portland',      'OR', 'US', 'gold',     1520.75, '2021-03-14', 'prefers email contact'),
  ('bob.brown@example.com',      'Bob',   'Brown',    'Austin',        'TX', 'US', 'silver',    640.00, '2022-07-01', NULL),
  ('carol.chen@example.com',     'Carol', 'Chen',     'San Francisco', 'CA', 'US', 'platinum', 8999.99, '2019-11-23', 'VIP since 2020'),
  ('dave.diaz@example.com',      'Dave',  'Diaz',     'Miami',         'FL', 'US', 'bronze',     85.50, '2023-01-09', NULL),
  ('eve.evans@example.com',      'Eve',   'Evans',    'Toronto',       'ON', 'CA', 'silver',    412.30, '2023-05-30', 'referred by alice');
