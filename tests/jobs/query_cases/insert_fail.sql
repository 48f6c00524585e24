-- fail: single_select
INSERT INTO pums (age) VALUES (1)
