-- fail: encrypted_column, column: tax.tax_enc
SELECT industry, SUM(tax_enc) AS total FROM tax GROUP BY industry
