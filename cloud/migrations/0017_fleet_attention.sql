-- Issue 20: the fleet page for 10 000 boxes filters, counts and sorts in PostgreSQL, so whether a
-- heartbeat's figures need a person's look (fleet::concerns: failed update, unhealthy, backlog,
-- skew, printer, disk, backup...) is stored beside it, judged by the cloud when it is received.
-- Offline and never-seen are judged at read time from the clock, as before. Rows from before
-- this migration say false until the box's next heartbeat (a minute); an offline box needs
-- attention whatever this says.
alter table device_heartbeats add column attention boolean not null default false;
